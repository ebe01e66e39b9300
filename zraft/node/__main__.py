import sys

from zraft.node.main import main

sys.exit(main())
