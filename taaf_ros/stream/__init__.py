"""The ROS-free live core: everything between decoded messages and a window to classify.

``buffers``  bounded ring buffers for events and audio (fixed memory, counted overflow)
``clock``    sensor time -> ROS time (offset filter per stream, plausibility of stamps), the
             stamp-less audio clock, sequence tracking, the window grid
``scheduler`` when a window is cut and which modality is present in it
``event_frames`` the streaming event front end: every event binned once, on arrival
``audio_frames`` the streaming cochlea: each analysis frame computed once
``live_frontend`` both front ends behind one object: decoded data in, a window's tensors out
``inputs``   the node's message decoding (duck-typed messages) onto the ROS clock
``replay_plan`` the timeline on which the replay node plays a data set
No ROS import anywhere in this package.
"""
