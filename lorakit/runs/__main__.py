import sys

from lorakit.runs.check import main

sys.exit(main())
