"""The parking controller and the signals (buzzer, LED) it drives."""
