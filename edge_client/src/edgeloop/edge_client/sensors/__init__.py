"""Range sensors: the VL53L0X driver on smbus2 and the simulated VL53L0X."""
