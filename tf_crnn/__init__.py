"""tf-crnn: CRNN text recognizers (CNN + BiLSTM + CTC) trained with TensorFlow, each training a Sacred run."""
import warnings

__version__ = "0.5.0"

# Sacred 0.8.7 imports pkg_resources, whose deprecation warning setuptools 81 prints on every run: nothing a user
# of tf-crnn can act on (the lock pins setuptools below 82, which removed pkg_resources).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API", category=UserWarning,
                        module="sacred")
