"""The scene simulator: a seeded renderer of the rear camera view and the drive that moves it."""
