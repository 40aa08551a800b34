import sys

from medreg.cli.main import main

sys.exit(main())
