"""DICOM in and out: the source series a volume was read from, CT series written from a volume,
and results as DICOM Segmentation (SEG) and Structured Report (SR) objects made with highdicom."""
