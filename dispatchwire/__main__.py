"""``python -m dispatchwire``: the ``dispatchwire`` command (``cli.main``).

The one module of the ground that names the roof: Python looks for ``__main__`` in the
package named on its command line, and nothing of ours imports this module.
"""

import sys

from cli.main import main

sys.exit(main())
