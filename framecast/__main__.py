from framecast.cli import main

raise SystemExit(main())
