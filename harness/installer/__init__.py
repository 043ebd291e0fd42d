"""Kubespray sources per ref and the inventory the harness hands them."""
