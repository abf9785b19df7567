"""The paper's baselines and newer peers, as schemes registered by name.

One module per scheme; importing this package (done by
:mod:`faceobfuscator.recognition.schemes`) registers every one of them. Add a scheme by
adding its module and one import line here.
"""

from faceobfuscator.recognition.baselines import advface as advface
from faceobfuscator.recognition.baselines import cloak as cloak
from faceobfuscator.recognition.baselines import dctdp as dctdp
from faceobfuscator.recognition.baselines import duetface as duetface
from faceobfuscator.recognition.baselines import instahide as instahide
from faceobfuscator.recognition.baselines import minusface as minusface
from faceobfuscator.recognition.baselines import partialface as partialface
from faceobfuscator.recognition.baselines import ppfr_fd as ppfr_fd
