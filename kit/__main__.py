import sys

from kit.tools.cli import main

sys.exit(main())
