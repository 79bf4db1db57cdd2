"""Running the pipeline on one machine, from a checkout: the Azurite emulator, the local Airflow
stack, the demo, the stack's environment file, and which process holds a port. The console
command ``hr-pipeline`` (``cli``) drives them; tests and benchmarks import them as any user would.

May import anything of the package; nothing of the package imports it.
"""

from pathlib import Path

from hr_pipeline.runtime.settings import local_state_dir_name

# The checkout this package is installed from (editable): its dags/, plugins/, .local/, node_modules/.
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def state_dir() -> Path:
    """Where the local tools keep their state: ``HR_LOCAL_DIR``, else ``.local`` in the checkout."""
    return Path(local_state_dir_name() or PROJECT_ROOT / ".local").resolve()
