"""Training: the LSTM action classifier and custom keypoint models (imports TensorFlow)."""
