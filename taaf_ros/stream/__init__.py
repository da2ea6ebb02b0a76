"""The ROS-free live core: everything between decoded messages and a window to classify.

``buffers``  bounded ring buffers for events and audio (fixed memory, counted overflow)
``clock``    sensor time -> ROS time (offset filter per stream, plausibility of stamps), the
             stamp-less audio clock, sequence tracking, the window grid
``scheduler`` when a window is cut and which modality is present in it
``event_frames`` the streaming event front end: every event binned once, on arrival
``replay_plan`` the timeline on which the replay node plays a data set
No ROS import anywhere in this package.
"""
