"""TensorFlow's start-up chatter is dropped from standard error; everything else passes, in order."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from popdl.native_logs import is_noise, wanted

ABSL_WARNING = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = ("I0000 00:00:1796288197.627743    6766 port.cc:153] oneDNN custom operations are on. You may see slightly "
          "different numerical results due to floating-point round-off errors from different computation orders.")
CPU_GUARD = ("I0000 00:00:1796288197.685880    6766 cpu_feature_guard.cc:227] This TensorFlow binary is optimized "
             "to use available CPU instructions in performance-critical operations.")
CPU_GUARD_2 = ("To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with "
               "the appropriate compiler flags.")
TF_WARNING = "W0000 00:00:1796288199.484564    6766 gpu_device.cc:2342] Cannot dlopen some GPU libraries."
TF_ERROR = "E0000 00:00:1796288199.484564    6766 cuda_dnn.cc:8310] Unable to register cuDNN factory"


def test_only_abseil_info_lines_are_noise():
    for line in (ABSL_WARNING, ONEDNN, CPU_GUARD, CPU_GUARD_2, "I1203 08:56:47.587000 12 grpc/init.cc:3] started"):
        assert is_noise(line.encode()), line
    for line in (TF_WARNING, TF_ERROR, "popdl: error: obs.vcf: not a VCF", "2026-12-03 08:56:47,587 popdl INFO: x",
                 "I0000 without the rest", "To enable the following instructions: read the docs", ""):
        assert not is_noise(line.encode()), line
    assert wanted(False, {}) and wanted(False, {"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert not wanted(True, {}) and not wanted(False, {"TF_CPP_MIN_LOG_LEVEL": "0"})


def _run(body: str) -> subprocess.CompletedProcess:
    code = "import os, subprocess, sys\nfrom popdl.native_logs import filtered_stderr\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_descriptor_two_is_filtered_for_the_process_and_its_children_and_restored_after():
    child = f"import os; os.write(2, {(CPU_GUARD + chr(10) + CPU_GUARD_2 + chr(10) + TF_WARNING + chr(10)).encode()!r})"
    proc = _run(f"""
        with filtered_stderr():
            os.write(2, {(ABSL_WARNING + chr(10) + ONEDNN + chr(10)).encode()!r})
            print("python line 1", file=sys.stderr)
            subprocess.run([sys.executable, "-c", {child!r}], check=True)
            os.write(2, {(TF_ERROR + chr(10)).encode()!r} + b"partial line without newline")
        print(" ended", file=sys.stderr)
        print("stdout untouched")
        with filtered_stderr(False):
            os.write(2, {(ONEDNN + chr(10)).encode()!r})
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "stdout untouched\n"
    assert proc.stderr == f"python line 1\n{TF_WARNING}\n{TF_ERROR}\npartial line without newline ended\n{ONEDNN}\n"


def test_tensorflow_starts_quietly():
    proc = _run("""
        os.environ["KERAS_BACKEND"] = "tensorflow"
        with filtered_stderr():
            import keras
            print(keras.ops.sum(keras.ops.ones((3,))), file=sys.stderr)
            print("after", file=sys.stderr)
    """)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()][-1] == "after", proc.stderr
    assert "absl::InitializeLog" not in proc.stderr and "oneDNN" not in proc.stderr, proc.stderr
    assert "cpu_feature_guard" not in proc.stderr, proc.stderr
