"""Teleportation over delivered Bell pairs with state tomography (``qhil run teleport``),
and BBPSSW purification of elementary-link pairs for the network's requests."""
