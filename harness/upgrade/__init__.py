"""Running the upgrade paths with ansible-runner and turning what they emit into a timeline."""
