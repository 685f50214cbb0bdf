"""The paper's supervised experiments on scikit-learn's 8x8 digits: permuting and rotating digits."""
