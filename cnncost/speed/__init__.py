"""Time: what a device achieves (calibrate), measured time per layer (profile) and predicted time (predict).

`device` describes a device (a measured profile or a data-sheet entry); `predict` needs no torch.
"""
