# Runs the Autobahn TestSuite's `wstest` from the directory run.sh installed
# it into (argv[1]); the rest of argv goes to wstest. site.addsitedir, not
# PYTHONPATH, because zope.interface is a namespace package made importable
# by a .pth file, and only site directories read those.
import site
import sys

site.addsitedir(sys.argv[1])
from autobahntestsuite.wstest import run  # noqa: E402

sys.argv = ["wstest"] + sys.argv[2:]
run()
