"""Networks: interchangeable Keras 3 architectures chosen by name.

Every network is a class registered in :data:`NETWORKS` under the name used in
the config (``network: cnn2d | cnn1d | mlp | cnn2d_stats | exchangeable |
exchangeable_stats``) and in the search
space (``tuning.search_space.network``).  A network declares which inputs it
reads (:attr:`Network.inputs`, a subset of ``image``, ``distances``,
``stats``) and builds a functional :class:`keras.Model` whose outputs are

``scenario``
    one logit per scenario (the softmax, divided by a temperature fitted on
    validation examples the final model did not train on, gives each
    scenario's probability);
``params``
    ``(parameters, quantiles)``: the quantiles (e.g. 5 %, 50 %, 95 %) of each
    parameter on its standardised target scale (the logit of its position
    within its prior's bounds, on a log scale where the prior is
    log-uniform: :mod:`popdl.preprocess`), trained with a pinball loss
    masked where the scenario lacks the parameter.

Towers (``hp["towers"]``): ``shared`` feeds both outputs from one body and
one dense head; ``separate`` builds the body and dense head twice, as two
sub-models ``classify_tower`` and ``regress_tower`` that share only the
inputs.  Measured on the default scenarios, a shared body stops improving
the parameters long before the scenario loss stops falling, so separate
towers, each kept at its own best epoch (:mod:`popdl.training`), estimate
the parameters better for the same hyper-parameters.

Inputs, shapes and dtypes:

``image``      (haplotypes, snps) int8, the genotype image (1 minor, -1 major, 0 padding or missing)
``distances``  (snps,) float32, the distance to the previous SNP / locus length
``stats``      (statistics,) float32, standardised summary statistics

``shapes`` may also hold ``populations``: the population of each haplotype
(image row), which the exchangeable networks pool within.

The code uses ``keras.ops`` and ``keras.layers`` only, so it runs on the
TensorFlow (default), JAX and PyTorch backends (``KERAS_BACKEND``).

Hyper-parameters read by :meth:`Network.build` (``hp`` mapping; defaults in
:data:`DEFAULT_HP`): ``conv_layers``, ``filters`` (of the first block;
doubled in each following block), ``kernel_size``, ``pooling`` (max | avg |
none), ``dense_layers``, ``dense_units``, ``dropout``, ``batch_norm``,
``l1``, ``l2``, ``activation``, ``towers`` (shared | separate),
``stat_scale`` (linear | log: the skewed non-negative statistics on a log10
scale, :class:`LogStatistics`).
"""

from __future__ import annotations

import keras
from keras import layers, ops

__all__ = [
    "NETWORKS",
    "DEFAULT_HP",
    "Network",
    "get_network",
    "register",
    "pinball_loss",
    "PinballLoss",
    "TOWERS",
    "HaplotypeChannels",
    "LogStatistics",
    "log_scaled_statistics",
    "PopulationPooling",
    "ensemble",
    "combine_tasks",
    "input_names",
    "scenario_head",
]

#: Defaults for the architecture hyper-parameters (the slides' recommended settings).
DEFAULT_HP = {
    "conv_layers": 2,
    "filters": 16,
    "kernel_size": 3,
    "pooling": "max",
    "dense_layers": 1,
    "dense_units": 64,
    "dropout": 0.5,
    "batch_norm": True,
    "l1": 0.0,
    "l2": 0.0,
    "activation": "relu",
    "towers": "shared",
    "stat_scale": "linear",
}

#: Names of the two towers' sub-models (``towers: separate``), by task.
TOWERS = {"classify": "classify_tower", "regress": "regress_tower"}

#: Registry: config name -> network class.
NETWORKS: dict[str, type[Network]] = {}


def register(name: str):
    """Class decorator adding a network to :data:`NETWORKS` under ``name``."""

    def deco(cls):
        cls.name = name
        NETWORKS[name] = cls
        return cls

    return deco


def get_network(name: str) -> Network:
    """The network registered as ``name``; unknown names list the valid ones."""
    try:
        return NETWORKS[name]()
    except KeyError:
        raise ValueError(f"unknown network {name!r} (valid: {', '.join(sorted(NETWORKS))})") from None


# ---------------------------------------------------------------------------
# Small serialisable layers (saved in .keras files; loading imports this module)


@keras.saving.register_keras_serializable(package="popdl")
class GenotypeImage(layers.Layer):
    """int8 (haplotypes, snps) -> float (haplotypes, snps, 1), or
    (snps, haplotypes) with ``channels_last_snps`` (haplotypes as channels)."""

    def __init__(self, transpose: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.transpose = transpose

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.transpose:
            return ops.transpose(x, (0, 2, 1))
        return ops.expand_dims(x, -1)

    def compute_output_shape(self, shape):
        if self.transpose:
            return (shape[0], shape[2], shape[1])
        return (*shape, 1)

    def get_config(self):
        return {**super().get_config(), "transpose": self.transpose}


@keras.saving.register_keras_serializable(package="popdl")
class LogStatistics(layers.Layer):
    """Standardised statistics -> the same, with the columns of ``mask`` on a log scale.

    A column ``z = (x − mean) / std`` of ``mask`` becomes
    ``(log10(max(x, 0) + offset) − log_mean) / log_std``; the others pass
    unchanged.  The constants come from the preprocessor
    (:meth:`popdl.preprocess.Preprocessor.stat_log`), fitted on the training
    statistics; nothing here is trained.  Computed in float32 whatever the
    precision policy (``z · std + mean`` needs the mantissa).
    """

    def __init__(self, mean, std, offset, log_mean, log_std, mask, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.constants = {"mean": [float(v) for v in mean], "std": [float(v) for v in std],
                          "offset": [float(v) for v in offset], "log_mean": [float(v) for v in log_mean],
                          "log_std": [float(v) for v in log_std], "mask": [bool(v) for v in mask]}

    def call(self, z):
        c = {k: ops.convert_to_tensor(v, dtype="float32") for k, v in self.constants.items() if k != "mask"}
        z = ops.cast(z, "float32")
        x = ops.maximum(z * c["std"] + c["mean"], 0.0)
        logged = (ops.log(x + c["offset"]) / ops.log(10.0) - c["log_mean"]) / c["log_std"]
        return ops.where(ops.convert_to_tensor(self.constants["mask"]), logged, z)

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, **self.constants}


def log_scaled_statistics(model) -> int:
    """How many statistics ``model`` puts on a log scale: the columns its
    :class:`LogStatistics` layers mark, counted once per distinct column set
    (an ensemble's members share their preprocessor), 0 without such a layer."""
    found, stack = set(), [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, LogStatistics):
            found.add(tuple(layer.constants["mask"]))
        stack.extend(getattr(layer, "layers", []) or [])
    return max((sum(mask) for mask in found), default=0)


@keras.saving.register_keras_serializable(package="popdl")
class ExpandLast(layers.Layer):
    """(batch, n) -> (batch, n, 1)."""

    def call(self, x):
        return ops.expand_dims(ops.cast(x, self.compute_dtype), -1)

    def compute_output_shape(self, shape):
        return (*shape, 1)


def pinball_loss(y_true, y_pred, quantiles):
    """Mean pinball (quantile) loss over the parameters a scenario has.

    ``y_true`` (batch, parameters) with NaN where the scenario lacks the
    parameter; ``y_pred`` (batch, parameters, quantiles).
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    mask = ops.logical_not(ops.isnan(y_true))
    y = ops.where(mask, y_true, ops.zeros_like(y_true))
    q = ops.reshape(ops.convert_to_tensor(quantiles, dtype=y_pred.dtype), (1, 1, -1))
    err = ops.expand_dims(y, -1) - y_pred
    loss = ops.maximum(q * err, (q - 1.0) * err)
    loss = ops.mean(loss, axis=-1)
    maskf = ops.cast(mask, y_pred.dtype)
    return ops.sum(loss * maskf, axis=-1) / ops.maximum(ops.sum(maskf, axis=-1), 1.0)


@keras.saving.register_keras_serializable(package="popdl")
class PinballLoss(keras.losses.Loss):
    """Masked pinball loss (see :func:`pinball_loss`) as a Keras loss."""

    def __init__(self, quantiles=(0.05, 0.5, 0.95), name="pinball", **kwargs):
        super().__init__(name=name, **kwargs)
        self.quantiles = [float(q) for q in quantiles]

    def call(self, y_true, y_pred):
        return pinball_loss(y_true, y_pred, self.quantiles)

    def get_config(self):
        return {**super().get_config(), "quantiles": self.quantiles}


# ---------------------------------------------------------------------------
# Networks


class Network:
    """Base class: subclasses define :attr:`inputs` and :meth:`body`."""

    name = "base"
    #: Inputs the network reads, a subset of ("image", "distances", "stats").
    inputs: tuple[str, ...] = ()

    def build(
        self,
        shapes: dict[str, tuple],
        *,
        hp: dict,
        n_classes: int,
        n_params: int,
        quantiles: tuple[float, ...] = (0.05, 0.5, 0.95),
        tasks: tuple[str, ...] = ("classify", "regress"),
        name: str | None = None,
    ) -> keras.Model:
        """A functional model (named ``name``, default the network's name); ``shapes``
        maps input name -> shape without batch axis."""
        hp = {**DEFAULT_HP, **(hp or {})}
        if hp["towers"] not in ("shared", "separate"):
            raise ValueError(f"unknown towers {hp['towers']!r} (valid: separate, shared)")
        self.populations = shapes.get("populations")
        if hp.get("stat_scale", "linear") not in ("linear", "log"):
            raise ValueError(f"unknown stat_scale {hp['stat_scale']!r} (valid: linear, log)")
        dtypes = {"image": "int8", "distances": "float32", "stats": "float32"}
        model_inputs = {name: keras.Input(shape=tuple(shapes[name]), dtype=dtypes[name], name=name)
                        for name in self.inputs}
        tensors = dict(model_inputs)
        if "stats" in tensors and hp.get("stat_scale") == "log" and shapes.get("stat_log"):
            tensors["stats"] = LogStatistics(**shapes["stat_log"], name="stats_log")(tensors["stats"])
        heads = [t for t in ("classify", "regress") if t in tasks and (t == "classify" or n_params)]
        if not heads:
            raise ValueError("no output: the task list must contain classify and/or regress")
        if hp["towers"] == "separate" and len(heads) == 2:
            features = {task: self._tower(tensors, hp, name=TOWERS[task]) for task in heads}
        else:
            x = self._features(tensors, hp)
            features = dict.fromkeys(heads, x)
        outputs = {}
        # The outputs stay float32 under a mixed-precision policy (train.mixed_precision):
        # logits and quantiles feed the losses and the calibration.
        if "classify" in features:
            outputs["scenario"] = layers.Dense(n_classes, name="scenario", dtype="float32")(features["classify"])
        if "regress" in features:
            q = layers.Dense(n_params * len(quantiles), name="params_flat", dtype="float32")(features["regress"])
            outputs["params"] = layers.Reshape((n_params, len(quantiles)), name="params", dtype="float32")(q)
        return keras.Model(model_inputs, outputs, name=name or self.name)

    def _features(self, tensors: dict, hp: dict):
        """The body and the dense head: the features both outputs read."""
        x = self.body(tensors, hp)
        for i in range(int(hp["dense_layers"])):
            x = _dense(x, int(hp["dense_units"]), hp, name=f"head_dense{i}")
        return x

    def _tower(self, tensors: dict, hp: dict, *, name: str):
        """:meth:`_features` as a sub-model of its own (its layers named as in a shared model)."""
        inner = {k: keras.Input(shape=tuple(v.shape[1:]), dtype=v.dtype, name=k) for k, v in tensors.items()}
        return keras.Model(inner, self._features(inner, hp), name=name)(tensors)

    def body(self, tensors: dict, hp: dict):  # pragma: no cover - abstract
        raise NotImplementedError


def _regularizer(hp):
    l1, l2 = float(hp["l1"]), float(hp["l2"])
    return keras.regularizers.L1L2(l1=l1, l2=l2) if (l1 or l2) else None


def _dense(x, units, hp, *, name):
    x = layers.Dense(units, kernel_regularizer=_regularizer(hp), use_bias=not hp["batch_norm"], name=name)(x)
    if hp["batch_norm"]:
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    x = layers.Activation(hp["activation"], name=f"{name}_act")(x)
    if float(hp["dropout"]) > 0:
        x = layers.Dropout(float(hp["dropout"]), name=f"{name}_drop")(x)
    return x


def _conv_blocks(x, hp, *, conv, pool, kernel, pool_size, prefix):
    """Blocks of convolution -> pooling -> batch normalisation -> activation.

    Pooling comes straight after the convolution, so normalisation and
    activation run on the pooled tensor, a quarter of the size in 2-D (max
    pooling and a monotonic activation commute; only the batch statistics
    are taken after pooling).  On a CPU this halves a 2-D CNN's step time,
    which is bound by memory traffic through the full-resolution activations.
    """
    for i in range(int(hp["conv_layers"])):
        filters = int(hp["filters"]) * 2**i
        x = conv(filters, kernel, padding="same", kernel_regularizer=_regularizer(hp),
                 use_bias=not hp["batch_norm"], name=f"{prefix}_conv{i}")(x)
        if hp["pooling"] in ("max", "avg") and pool[hp["pooling"]] is not None:
            x = pool[hp["pooling"]](pool_size, padding="same", name=f"{prefix}_pool{i}")(x)
        if hp["batch_norm"]:
            x = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn{i}")(x)
        x = layers.Activation(hp["activation"], name=f"{prefix}_act{i}")(x)
    return x


def _distance_branch(d, hp):
    return _dense(d, max(8, int(hp["dense_units"]) // 2), {**hp, "dropout": 0.0}, name="dist_dense")


def _stats_branch(s, hp, *, layers_=1, prefix="stats"):
    x = s
    for i in range(max(1, layers_)):
        x = _dense(x, int(hp["dense_units"]), {**hp, "dropout": 0.0}, name=f"{prefix}_dense{i}")
    return x


@register("cnn2d")
class CNN2D(Network):
    """2-D convolutions over the (haplotypes × SNPs) image, plus a dense
    branch over the inter-SNP distances, joined before the dense head."""

    inputs = ("image", "distances")

    def image_features(self, image, hp):
        x = GenotypeImage(name="image_float")(image)
        k = int(hp["kernel_size"])
        x = _conv_blocks(x, hp, conv=layers.Conv2D, kernel=(k, k), pool_size=(2, 2), prefix="img",
                         pool={"max": layers.MaxPooling2D, "avg": layers.AveragePooling2D})
        # Average over haplotypes (their order carries little information), keep SNP order.
        x = layers.AveragePooling2D(pool_size=(x.shape[1], 1), name="hap_mean")(x)
        return layers.Flatten(name="flatten")(x)

    def body(self, t, hp):
        x = self.image_features(t["image"], hp)
        return layers.Concatenate(name="join")([x, _distance_branch(t["distances"], hp)])


@register("cnn1d")
class CNN1D(Network):
    """1-D convolutions along the SNPs with haplotypes as channels; the
    inter-SNP distances are one more channel."""

    inputs = ("image", "distances")

    def body(self, t, hp):
        x = GenotypeImage(transpose=True, name="image_channels")(t["image"])
        d = ExpandLast(name="distance_channel")(t["distances"])
        x = layers.Concatenate(axis=-1, name="with_distances")([x, d])
        x = _conv_blocks(x, hp, conv=layers.Conv1D, kernel=int(hp["kernel_size"]), pool_size=2, prefix="seq",
                         pool={"max": layers.MaxPooling1D, "avg": layers.AveragePooling1D})
        return layers.Flatten(name="flatten")(x)


@register("mlp")
class MLP(Network):
    """Dense layers over the standardised summary statistics."""

    inputs = ("stats",)

    def body(self, t, hp):
        return _stats_branch(t["stats"], hp, layers_=1, prefix="stats")


@keras.saving.register_keras_serializable(package="popdl")
class HaplotypeChannels(layers.Layer):
    """int8 image (haplotypes, snps) and distances (snps,) -> float (haplotypes, snps, 2):
    each haplotype's alleles with the inter-SNP distances as a second channel."""

    def call(self, inputs):
        image, distances = inputs
        x = ops.expand_dims(ops.cast(image, self.compute_dtype), -1)
        d = ops.expand_dims(ops.expand_dims(ops.cast(distances, self.compute_dtype), 1), -1)
        return ops.concatenate([x, d * ops.ones_like(x)], axis=-1)

    def compute_output_shape(self, shapes):
        image = shapes[0]
        return (*image, 2)


@keras.saving.register_keras_serializable(package="popdl")
class PopulationPooling(layers.Layer):
    """(batch, haplotypes, snps, features) -> (batch, snps, features × moments × populations):
    symmetric functions (mean, max) over the haplotypes of each population, so the
    output does not change when haplotypes are permuted within a population.

    ``groups``: per population, the indices of its haplotypes (image rows)."""

    MOMENTS = ("mean", "max")

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = [[int(i) for i in g] for g in groups]
        if not self.groups or not all(self.groups):
            raise ValueError("population pooling needs at least one population with haplotypes")

    def call(self, x):
        pooled = []
        for rows in self.groups:
            sub = ops.take(x, rows, axis=1)
            pooled += [ops.mean(sub, axis=1), ops.max(sub, axis=1)]
        return ops.concatenate(pooled, axis=-1)

    def compute_output_shape(self, shape):
        return (shape[0], shape[2], shape[3] * len(self.MOMENTS) * len(self.groups))

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


def population_groups(populations, haplotypes: int) -> list[list[int]]:
    """Image rows of each population, in order of first appearance."""
    if populations is None:
        raise ValueError("the exchangeable networks need the population of each haplotype (shapes['populations'])")
    populations = [str(p) for p in populations]
    if len(populations) != haplotypes:
        raise ValueError(f"{len(populations)} haplotype populations for an image of {haplotypes} haplotypes")
    return [[i for i, p in enumerate(populations) if p == name] for name in dict.fromkeys(populations)]


@register("exchangeable")
class Exchangeable(Network):
    """An exchangeable network (Chan et al. 2018; SPIDNA, Sanchez et al. 2021): one
    feature extractor shared by every haplotype runs along the SNPs (1-D convolutions,
    kernel 1 × ``kernel_size``, over the alleles and the inter-SNP distances), the
    features are pooled within each population by symmetric functions (mean, max),
    and the pooled features of the populations go through one more convolution
    along the SNPs, then global mean and max pooling over the SNPs, into the head.
    Permuting haplotypes within a population leaves the outputs unchanged."""

    inputs = ("image", "distances")

    def exchangeable_features(self, t, hp):
        haplotypes = int(t["image"].shape[1])
        x = HaplotypeChannels(name="haplotype_channels")([t["image"], t["distances"]])
        k = int(hp["kernel_size"])
        x = _conv_blocks(x, hp, conv=layers.Conv2D, kernel=(1, k), pool_size=(1, 2), prefix="hap",
                         pool={"max": layers.MaxPooling2D, "avg": layers.AveragePooling2D})
        x = PopulationPooling(population_groups(self.populations, haplotypes), name="population_pooling")(x)
        filters = int(hp["filters"]) * 2 ** max(0, int(hp["conv_layers"]) - 1)
        x = _conv_blocks(x, {**hp, "conv_layers": 1, "filters": filters}, conv=layers.Conv1D, kernel=k, pool_size=2,
                         prefix="pop", pool={"max": layers.MaxPooling1D, "avg": layers.AveragePooling1D})
        return layers.Concatenate(name="snp_pooling")([layers.GlobalAveragePooling1D(name="snp_mean")(x),
                                                       layers.GlobalMaxPooling1D(name="snp_max")(x)])

    def body(self, t, hp):
        return self.exchangeable_features(t, hp)


@register("exchangeable_stats")
class ExchangeableStats(Exchangeable):
    """The exchangeable network's pooled features joined with a dense branch over the summary statistics."""

    inputs = ("image", "distances", "stats")

    def body(self, t, hp):
        x = self.exchangeable_features(t, hp)
        return layers.Concatenate(name="join")([x, _stats_branch(t["stats"], hp, layers_=1, prefix="stats")])


@register("cnn2d_stats")
class CNN2DStats(CNN2D):
    """The 2-D CNN's image branch joined with a dense branch over the summary statistics."""

    inputs = ("image", "distances", "stats")

    def body(self, t, hp):
        x = self.image_features(t["image"], hp)
        s = _stats_branch(t["stats"], hp, layers_=1, prefix="stats")
        return layers.Concatenate(name="join")([x, _distance_branch(t["distances"], hp), s])


def ensemble(members: list, *, name: str = "ensemble") -> keras.Model:
    """One model averaging the outputs of ``members`` (trained models with the same
    outputs and distinct names): the mean of the scenario logits and the mean of each
    parameter quantile on its target scale.  Its inputs are the members'."""
    inputs = _shared_inputs(members)
    outs = [m({k: inputs[k] for k in input_names(m)}) for m in members]
    averaged = {key: layers.Average(name=key, dtype="float32")([o[key] for o in outs]) for key in outs[0]}
    return keras.Model(inputs, averaged, name=name)


def combine_tasks(models: dict, *, name: str = "combined") -> keras.Model:
    """One model whose outputs are those of single-task models (task -> model, e.g. the
    ``scenario`` of a classifier and the ``params`` of a regressor, each possibly an
    :func:`ensemble`), fed the union of their inputs."""
    inputs = _shared_inputs(list(models.values()))
    outputs = {}
    for m in models.values():
        outputs.update(m({k: inputs[k] for k in input_names(m)}))
    # Named by output, so that the model's output names are "scenario" and "params".
    outputs = {key: layers.Identity(name=key, dtype="float32")(t) for key, t in outputs.items()}
    return keras.Model(inputs, outputs, name=name)


def input_names(model) -> list[str]:
    return [t.name.split(":")[0] for t in model.inputs]


def _shared_inputs(models: list) -> dict:
    inputs = {}
    for m in models:
        for t, key in zip(m.inputs, input_names(m)):
            inputs.setdefault(key, keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype, name=key))
    return inputs


def scenario_head(model):
    """``(network, layer)``: the dense layer that gives the scenario logits and the
    (sub-)network whose inputs reach it - ``model`` itself, or for an :func:`ensemble`
    its first member, for a :func:`combine_tasks` model its classifier; None without one."""
    try:
        layer = model.get_layer("scenario")
    except ValueError:
        layer = None
    if isinstance(layer, layers.Dense):
        return model, layer
    for sub in model.layers:
        if isinstance(sub, keras.Model):
            found = scenario_head(sub)
            if found is not None:
                return found
    return None
