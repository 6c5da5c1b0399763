import sys

from mdeaux.cli import main

sys.exit(main())
