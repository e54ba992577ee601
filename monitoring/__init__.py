"""Equipment monitoring: washers and dryers report telemetry; fault rules open faults.

A producer of EquipmentFaultEvent (queue `equipment.fault`); it imports nothing from the
consumers (`notifications`, `ml`).
"""
