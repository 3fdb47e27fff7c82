"""The file MLflow runs to rebuild the pyfunc model at load ("models from code").

Why a file and not a pickled object: loading then executes this reviewed code from the
installed package instead of unpickling bytes from the artifact store (MLflow warns about
pickled `python_model`s for that reason).  `pyfunc.log_bundle_model` logs this file.
"""

from mlflow.models import set_model

from adaptive_beta.models.bundle.pyfunc import BundleModel

set_model(BundleModel())
