from popdl.cli import main

raise SystemExit(main())
