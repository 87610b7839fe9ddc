from kdviz.cli import main

raise SystemExit(main())
