import sys

from rapport.demo.run import main

sys.exit(main())
