import sys

from localcluster.simulator.cli import main

sys.exit(main())
