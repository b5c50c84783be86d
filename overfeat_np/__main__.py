"""`python -m overfeat_np` runs the `overfeat-np` command line."""

from .cli import main

raise SystemExit(main())
