import sys

from tools.controlplane.cluster import main

sys.exit(main())
