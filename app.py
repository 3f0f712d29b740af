"""The chat page, as `python app.py [flags]`: the same as `qa serve [flags]` (see qa/page/server.py)."""

import sys

from qa.cli import main

if __name__ == "__main__":
    main(["serve", *sys.argv[1:]], prog_name="qa")
