"""tf-crnn: CRNN text recognizers (CNN + BiLSTM + CTC) trained with TensorFlow, every training a Sacred run in MongoDB."""
__version__ = "0.5.0"
