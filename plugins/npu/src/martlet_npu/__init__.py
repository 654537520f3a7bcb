"""Huawei Ascend NPUs for Martlet, through torch_npu."""
