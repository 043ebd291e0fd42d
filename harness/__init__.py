"""kubespray-upgrade-harness: upgrade validation and conformance for Kubespray.

The pipeline, one package per stage:
scenario -> plan -> cluster -> installer -> upgrade -> probes -> checks -> report.
"""

__version__ = "0.1.0"
