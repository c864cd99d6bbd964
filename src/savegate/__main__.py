from savegate.cli import main

raise SystemExit(main())
