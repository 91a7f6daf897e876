"""`python -m mlgate ...` is the `mlgate` command."""

import sys

from mlgate.pipelines.cli.main import main

sys.exit(main())
