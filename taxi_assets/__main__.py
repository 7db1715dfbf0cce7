from taxi_assets.cli import main

raise SystemExit(main())
