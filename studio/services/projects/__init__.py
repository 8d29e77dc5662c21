"""The Projects tab: the project catalog on disk, the demo project and its synthetic scenes."""
