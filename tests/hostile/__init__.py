"""A generated corpus of hostile and clumsy dataset inputs, and the test that imports every case."""
