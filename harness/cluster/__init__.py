"""Clusters: one interface (`base.Cluster`), one provider per module (lab, vagrant, static)."""
