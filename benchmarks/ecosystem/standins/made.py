"""Stand-in for binarized_mnist.npz (karpathy/pytorch-made): binary 784-pixel images, fixed seed."""
import numpy as np

rng = np.random.default_rng(0)
np.savez("binarized_mnist.npz",
         train_data=(rng.random((512, 784)) < 0.3).astype(np.float32),
         valid_data=(rng.random((128, 784)) < 0.3).astype(np.float32),
         test_data=(rng.random((128, 784)) < 0.3).astype(np.float32))
