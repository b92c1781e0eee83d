import sys

from rapport.devstack.cli import main

sys.exit(main())
