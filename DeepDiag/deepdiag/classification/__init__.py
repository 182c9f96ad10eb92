"""Classification of findings (nodule type) and of whole volumes, measurements and saliency."""
