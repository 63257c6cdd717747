"""What every stage shares: the shop contract, the embeddings type, the producer
interface and training loop, snapshots, and the Feast plumbing. Imports no stage."""
