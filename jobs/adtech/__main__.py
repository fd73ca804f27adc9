"""``python -m jobs.adtech``: the live ad-tech demo (see ``jobs/adtech/demo.py``)."""

from jobs.adtech.demo import main

raise SystemExit(main())
