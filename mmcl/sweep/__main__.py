from mmcl.sweep.cli import main

raise SystemExit(main())
