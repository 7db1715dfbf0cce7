from taxi_assets.entry import main

raise SystemExit(main())
