"""The Data tab: importing datasets, browsing the gallery, the class tree, exporting datasets."""
