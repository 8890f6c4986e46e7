import sys

from dispatchwire.cli import main

sys.exit(main())
