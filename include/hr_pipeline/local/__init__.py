"""Running the pipeline on one machine, from a checkout: the Azurite emulator, the local Airflow
stack, the demo, the stack's environment file, and which process holds a port. The console
command ``hr-pipeline`` (``cli``) drives them; tests and benchmarks import them as any user would.

May import anything of the package; nothing of the package imports it.
"""

from pathlib import Path

# The checkout this package is installed from (editable): its dags/, plugins/, .local/, node_modules/.
PROJECT_ROOT = Path(__file__).resolve().parents[3]
