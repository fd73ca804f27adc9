"""``python -m jobs.adtech``: the live ad-tech demo (see ``jobs/adtech/demo.py``)."""

from engine.runtime.process_exit import exit_process
from jobs.adtech.demo import main

exit_process(main())
