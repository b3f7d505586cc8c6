"""What GNU Mailman's bounce detector, flufl.bounce, reads in each mail named on the command line:
a JSON object mapping each file's name to the recipients it finds failed, temporarily and
permanently (its `all_failures`)."""

import json
import os
import sys
from email import message_from_binary_file

from flufl.bounce import all_failures

found = {}
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        temporary, permanent = all_failures(message_from_binary_file(f))
    found[os.path.basename(path)] = {
        "temporary": sorted(a.decode("utf-8", "replace").lower() for a in temporary),
        "permanent": sorted(a.decode("utf-8", "replace").lower() for a in permanent),
    }
print(json.dumps(found))
