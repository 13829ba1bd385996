export default function Home() {
  return <p>POST an order to /api/orders; offload runs the fulfilment workflow.</p>;
}
