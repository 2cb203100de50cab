"""bsc_lightning: batch-softmax contrastive losses for pairwise sentence scoring (Chernyavskiy et al., NAACL 2022)."""
from pathlib import Path

__version__ = "0.1.0"

_HERE = Path(__file__).resolve().parent
# The checkout's conf/ (source or editable install); a wheel carries the same files as bsc_lightning/conf.
CONF_DIR = str(next((d for d in (_HERE.parent / "conf", _HERE / "conf") if (d / "config.yaml").is_file()),
                    _HERE.parent / "conf"))
