import sys

from tickvault.cli import main

sys.exit(main())
